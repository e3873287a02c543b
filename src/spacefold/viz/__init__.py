"""Pictures and the report: figures in one style (``spacefold.viz.plot``, matplotlib) and the
self-contained HTML report (``spacefold.viz.report``). Nothing upstream imports them."""
