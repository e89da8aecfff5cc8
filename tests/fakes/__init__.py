"""Fake provider servers on loopback for the connector tests."""
