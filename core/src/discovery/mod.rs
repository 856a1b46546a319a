//! appc meta discovery: from an image name and labels to image, signature and key URLs.
