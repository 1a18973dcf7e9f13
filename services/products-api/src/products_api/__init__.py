"""products-api: the REST API pattern (API Gateway + Lambda + DynamoDB) on Knative and MongoDB."""
