"""The regime maps, as compact per-point records (``cells.json``) and what is drawn from them:

- ``records``: a map folder's records, what one record measures, merging published and new ones;
- ``c4``: the C4 prefix-capture map's cells, table and verdict paragraph; ``c4_figures`` its figures;
- ``c6``: the C6 steering map's table, verdict paragraph and figures.

loclin.reports.map_report puts them together into a map's report and the results page's map sections.
"""
