"""Label-free feature learning (#20): SimSiam on micrographs and on their power spectra (prismpyp's
method), SimCLR, and embeddings of micrographs to explore and sort them. Modules:

- :mod:`.images`: listing, checking and reading micrographs; the streamed dataset;
- :mod:`.spectra`: centred log power spectra;
- :mod:`.augment`: prismpyp's real- and Fourier-space recipes, SimCLR's;
- :mod:`.simsiam`, :mod:`.simclr`: the networks and their losses;
- :mod:`.checkpoints`: strict loading of ours, SimSiam's, torchvision's and the SimCLR trainer's;
- :mod:`.embedding`: 2D maps, clusters, k-NN accuracy; :mod:`.tables`: embedding tables;
- :mod:`.train_job`, :mod:`.embed_job`: the jobs.

Nothing here imports Qt or napari; importing the package imports none of its modules.
"""

from napari_cryolearn._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "ImageRef": "images",
        "list_micrographs": "images",
        "check_micrographs": "images",
        "read_micrograph": "images",
        "MicrographDataset": "images",
        "power_spectrum": "spectra",
        "SimSiam": "simsiam",
        "simsiam_loss": "simsiam",
        "CollapseMonitor": "simsiam",
        "SimCLR": "simclr",
        "nt_xent": "simclr",
        "load_encoder_weights": "checkpoints",
        "LoadReport": "checkpoints",
        "map_2d": "embedding",
        "cluster_embeddings": "embedding",
        "knn_accuracy": "embedding",
        "read_embedding_table": "tables",
        "write_embedding_table": "tables",
    },
)
del attach
