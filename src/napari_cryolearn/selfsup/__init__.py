"""Label-free feature learning (#20): SimSiam on micrographs and on their power spectra (prismpyp's
method), SimCLR, and embeddings of micrographs to explore and sort them.

Nothing here imports Qt or napari; importing the package imports none of its modules.
"""
