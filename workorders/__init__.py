"""Work orders (工单): catalog, providers, orders and their state machine; routing, provider pages and callbacks come next."""
