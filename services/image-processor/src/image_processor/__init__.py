"""image-processor: renditions of uploaded images, recorded in MongoDB."""
