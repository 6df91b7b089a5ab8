"""supervit: node agent and reference supervisor for the actrix supervisor.v1 protocol."""
