// What the JVM sees of the machine's memory: one JSON line now and after every input line.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.management.ManagementFactory;

public class MemView {
    public static void main(String[] args) throws Exception {
        com.sun.management.OperatingSystemMXBean os =
            (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        do {
            System.out.println("{\"max\": " + Runtime.getRuntime().maxMemory()
                + ", \"total\": " + os.getTotalMemorySize()
                + ", \"free\": " + os.getFreeMemorySize() + "}");
            System.out.flush();
        } while (in.readLine() != null);
    }
}
