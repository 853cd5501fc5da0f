"""Everything that imports Qt or napari: reader/writer hooks, sample data, widgets."""
