"""minio-source: MinIO bucket notifications in, one CloudEvent per S3 record out."""
