"""Moving messages: the AMQP transport, the in-memory twin, the RabbitMQ management API."""
