// A JVM service with default-ish ergonomics: -XX:MaxRAMPercentage sizes the heap from
// physical memory at start; it caches byte arrays up to a quarter of the free heap and
// reports Runtime.maxMemory() (fixed at start) and the OS total (re-read).
import java.lang.management.ManagementFactory;
import java.util.ArrayList;

public class HeapCache {
    public static void main(String[] args) throws Exception {
        var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
        var cache = new ArrayList<byte[]>();
        while (true) {
            Runtime rt = Runtime.getRuntime();
            long room = rt.maxMemory() - (rt.totalMemory() - rt.freeMemory());
            long want = Math.min(room / 4, os.getFreeMemorySize() / 4) / (4 << 20);
            if (cache.size() < want) cache.add(new byte[4 << 20]);
            else if (cache.size() > want + 2) cache.remove(cache.size() - 1);
            System.out.println("{\"metric\": \"heap_max_mb\", \"value\": " + (rt.maxMemory() >> 20) + "}");
            System.out.println("{\"metric\": \"total_mb\", \"value\": " + (os.getTotalMemorySize() >> 20) + "}");
            Thread.sleep(500);
        }
    }
}
