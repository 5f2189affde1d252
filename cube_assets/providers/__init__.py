"""Where scenes come from: the local and simulated archives, STAC APIs over HTTP, the registry, the priority chain.

``base`` (the provider interface and scene references), ``local``, ``simulated``, ``stac``;
``http`` (verified downloads) with ``credentials``, ``retry`` and ``multihash``; ``registry``
and ``registry_models`` (the providers table); ``chain`` (fall through providers by priority).
"""
