"""LLM providers behind one small protocol (see base.LLMProvider)."""
