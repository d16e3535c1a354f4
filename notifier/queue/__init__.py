"""RabbitMQ: topology, the publisher (server side), the consumer processes and their pool."""
