set terminal pngcairo size 900,600
set output 'accuracy_kl.png'
set title "KL(exact || HyperAttention), bundled model, Emma 8192 tokens, all 6 layers"
set xlabel "keys per query (block + samples)"
set ylabel "mean KL per token (nats)"
set logscale xy
set xrange [48:340]
set yrange [0.01:0.15]
set xtics (64, 128, 256)
set grid
set key top right
plot 'accuracy_kl.dat' using 1:2 with linespoints lw 2 title "paper (block K/2, uniform samples K/2)", \
     '' using 1:3 with linespoints lw 2 title "stratified (block K/8, stratified samples 7K/8)"
