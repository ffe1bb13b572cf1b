"""The pure core: the lifecycle table and the engine. No I/O, no asyncio, no wall clock."""
