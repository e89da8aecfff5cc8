"""recruitmail core: settings, models, state, planner, renderer, executor, scheduler and CLI."""

__version__ = "0.1.0"
