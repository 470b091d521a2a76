"""The engine's contract between Jobs and backbones: what to train, what came out."""
