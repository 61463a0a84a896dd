/** Process entry of the CLI (bin/flowgate.js loads the compiled copy of this file). */
import { main } from './main.js';

void main(process.argv);
