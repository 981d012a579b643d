"""Emulated radio hardware for tests: the real drivers run unmodified against these."""
