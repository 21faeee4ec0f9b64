"""The emulated POS terminal: pure core (terminal), durable books (journal), asyncio shell (channel), CLI."""
