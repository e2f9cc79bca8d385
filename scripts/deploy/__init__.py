"""Deployment: the Hugging Face Space sync, the KServe storage layout and the Kubernetes manifests' renderer and validator."""
