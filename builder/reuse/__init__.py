"""Reuse: deciding which stored case serves a build request (decide) and running that inside a build (phase)."""
