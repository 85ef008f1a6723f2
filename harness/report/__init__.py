"""Reporting: ``results.json`` records, ``report.html`` and its plots, and reading results
back (``load_results``, ``compare_results``)."""
