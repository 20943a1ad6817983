"""Cross-force enquiry (docs/ENQUIRY.md): an officer asks every force at once, governed by enquiry agreements.

`model` (subjects, identities, purposes, reason codes) and `agreements` (enquiry agreements and the pure
decision of who may ask whom) hold the rules; `index` (PostgreSQL) and `responder` answer for one force;
`transport` carries request/reply over RabbitMQ; `gateway` is the HTTP API and the officer's page; `review`
lists consultations and finds unusual officers.
"""
