"""xmodal: cross-modal retrieval by aligning pretrained embedding spaces.

data -> encoders -> store -> align -> retrieval -> evaluate; ``xmodal`` on the command line.
"""

__version__ = "0.1.0"
