"""Product formats: Sentinel-2 .SAFE, Landsat C2, STAC Items, Sen2Cor outputs, archives.

And the simulator of L2A products.
"""
