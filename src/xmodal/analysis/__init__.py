"""Geometry of aligned spaces (modality gap, Wasserstein, CKA, hubness), similarity-function
comparisons, figures and the ``xmodal analyze`` report."""
