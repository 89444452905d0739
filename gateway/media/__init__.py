"""Media: fetching finished clips safely (``download``)."""
