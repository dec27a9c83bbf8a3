public enum _PlaceholderSessionReplicationTestKit {}
