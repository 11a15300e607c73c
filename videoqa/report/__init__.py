"""Run and comparison reports: a static HTML page to see why a run answered as it did.

    write_report([run_dir, ...], out_dir)  ->  out_dir/report.html + out_dir/report_files/

A consumer of run directories (it reads what run/compare wrote; nothing but the CLI and compare
imports it). One module per step:
    rundata.py     read run directories (a comparison directory expands into its runs)
    joined.py      join runs on their common questions; outcomes; the page's data
    agreement.py   agreement matrix and exact McNemar p per pair of runs
    thumbnails.py  frames the runs looked at, decoded by the pipeline's decoder, cached as JPEGs
    header.py      the static header (identity, accuracy, breakdowns, timings, failures, config)
    page.py        the page: header, filters, data as safe inline JSON, report.js and report.css
    build.py       write_report
"""

from videoqa.report.build import DEFAULT_MAX_THUMBNAILS, REPORT_NAME, ReportTimings, write_report

__all__ = ["DEFAULT_MAX_THUMBNAILS", "REPORT_NAME", "ReportTimings", "write_report"]
