"""The measurement core (private): everything between a model and the numbers of the papers.

One module per stage, each importing only the stages before it:
``patterns`` (which bits a point lights up) → ``walk`` (which regions a segment crosses:
uniform, bisect, exact) → ``measure`` (r1, r2, χ, profiles on walks) → ``pairs`` (which
segments to walk) → ``folding`` (the pipeline behind ``walk``/``folding``/``folding_batch``)
→ ``global_folding`` (Φ_N over a data set); ``plane`` (exact regions of a 2-D slice) and
``parallel`` (worker processes and ranks) beside them. The public names are re-exported by
``spacefold`` itself; the modules here may change between releases.
"""
