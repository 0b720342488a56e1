"""The ``shipyard`` command line: an edge that reads Settings once and drives a Workspace."""
