"""Proof of reliability: killed processes, injected faults and hostile input at volume (issue 7)."""
