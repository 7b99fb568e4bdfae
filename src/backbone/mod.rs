//! DINOv3 ViT backbone (frozen image features).
