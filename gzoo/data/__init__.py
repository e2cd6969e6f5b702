"""Image data: folders of images read as uint8 RGB, with a content hash for caching."""

from gzoo.data.images import IMAGE_SUFFIXES, ImageFolder, scan_image_folder

__all__ = ["IMAGE_SUFFIXES", "ImageFolder", "scan_image_folder"]
