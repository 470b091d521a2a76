"""The data layer: synthetic sources, ingestion of releases, splits."""
