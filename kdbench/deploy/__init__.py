"""Deploying what was benchmarked: exported model folders (``kdbench export``) and
prediction on new cases with them (``kdbench predict``)."""
