"""Search: the space of a sweep and the strategies that propose its candidates."""
