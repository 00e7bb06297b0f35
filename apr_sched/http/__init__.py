"""The /scheduler HTTP endpoint: a small h11 server over asyncio streams, routes, OpenAPI."""
