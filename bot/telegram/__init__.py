"""The Telegram adapter: ``app.build_application`` wires everything (handlers, jobs, resources); ``access``,
``commands`` and ``messages`` hold the handlers; ``intake`` and ``ordering`` take updates as they arrive and queue
them per chat; ``replies`` and ``streaming`` carry the flow's answers into the chat; ``identity``, ``topics``,
``context``, ``ratelimit`` and ``webhook`` are the pieces they share."""
