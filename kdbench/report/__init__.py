"""The benchmark report: from a protocol's complete MLflow runs to tables, figures, paired
statistics and the benefit-vs-N analysis (``kdbench report``; docs/reports.md).

Modules, one concept each: ``records`` (the tidy per-case table), ``statistics`` (tests, CIs,
ranks on one comparison), ``benefit`` (gain vs N and N*), ``analysis`` (all of them over a
protocol), ``tables``, ``figures``, ``qualitative``, ``html`` (the writers) and ``build`` (the
report folder).
"""
