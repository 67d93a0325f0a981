"""Data: data-set loaders (``datasets``) and the out-of-core shuffle (``shuffle``)."""
