"""What the core and every connector agree on, and nothing else.

The data types they exchange (``models``), the errors a connector may raise (``errors``), the
budgets on what a calendar controls (``limits``), the one writer of mail headers (``mime``), how a
secret is read (``secrets``) and the source and sink protocols every connector implements
(``connector``). Both ``recruitmail.daemon`` and ``recruitmail.connectors`` import from here; nothing
here imports from either (``tests/test_layers.py``).
"""
