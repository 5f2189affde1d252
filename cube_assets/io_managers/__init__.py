"""io_managers"""
