"""sse-enforcer: keeps objects encrypted under the SSE-KMS key their bucket policy requires."""

__version__ = "0.1.0"
