"""The foundation every layer uses: defaults and file locations, array checks, the estimator
base class and its file format, atomic writes, and CSLS (shared by the few-pair aligner
and retrieval)."""
