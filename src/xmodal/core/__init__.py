"""The foundation every layer uses: defaults and file locations, array checks, the estimator
base class and its file format, atomic writes."""
