"""Research protocols built on the public API: the depth study behind ``spacefold demo``
and ``spacefold sweep`` (``spacefold.studies.depth``), the interaction coefficient on
adversarial paths (``spacefold.studies.adversarial``) and symmetry
(``spacefold.studies.symmetry``)."""
