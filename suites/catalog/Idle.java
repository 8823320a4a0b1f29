// The smallest Java service: it starts the JVM with its default ergonomics and waits, so
// the catalogue judges the JVM itself (what HotSpot believes about the guest's memory).
public class Idle {
    public static void main(String[] args) throws InterruptedException {
        System.out.println("started; max heap " + Runtime.getRuntime().maxMemory() / (1 << 20) + " MB");
        while (true) {
            Thread.sleep(1000);
        }
    }
}
