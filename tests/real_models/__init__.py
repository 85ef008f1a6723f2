"""Real third-party models (MobileNetV2, MTCNN) gated as a user would gate them."""
