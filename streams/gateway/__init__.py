"""The HTTP ingestion gateway (`pulse gateway`): the products' analytics SDKs send here unchanged.

`batch` (seed 001's batch API), `segment`, `posthog`, `amplitude`: one module per API, each
turning its requests into `mapping.Item`s and answering by its API's convention; `core`
validates them with the ingest agent's `validate_record` and delivers them through
`producer` (acknowledged by the broker before the answer); `auth` holds write keys and rate
limits; `server` the aiohttp application and the process; `openapi` its document.
"""
