//! The alert rules and dashboards of deploy/observability/ against a running stack.
