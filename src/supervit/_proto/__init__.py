"""Generated from proto/*.proto by scripts/gen_protos.py. Do not edit."""
